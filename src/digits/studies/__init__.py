"""Studies: code that only the scripts use to measure and prove things about the training path, never
imported by it. The equivalence report (``compare``, ``compare_losses``, ``pytorch_suite``), the benchmarks
(``benchmark``, ``benchmark_losses``, ``benchmark_demo``, ``handwriting_benchmark``, ``augment_study``), the
recipe search (``objective``, ``search``), the GPU check's report (``gpu_check``) and the README's generated
tables (``docs``). Each script's work, report and result files are here, as ``run_<name>(cfg)``."""
