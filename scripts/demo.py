"""A page where you draw a digit and watch the network's logits become a loss.

python scripts/demo.py ckpt_path=outputs/train/<run>            # prints http://127.0.0.1:8000/
python scripts/demo.py ckpt_path=outputs/train/<run> port=0     # any free port
"""

import time

STARTED = time.perf_counter()  # before the heavy imports, so that start-up time can be reported

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from digits.overrides import check_command_line  # noqa: E402
from digits.resolvers import register_resolvers  # noqa: E402

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="demo")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console

    quiet_console()
    # Imported here, after Hydra has parsed the command line: `--help` needs no torch.
    import torch

    from digits.demo.app import Demo, open_socket, serve, url_of, validate_demo_config
    from digits.errors import DigitsError
    from digits.evaluation.loading import choose_device, load_module, resolve_checkpoint

    try:
        validate_demo_config(cfg)
        torch.set_num_threads(cfg.threads)
        path = resolve_checkpoint(cfg.ckpt_path)
        demo = Demo(
            load_module(path, choose_device(cfg.device)), path, cfg.max_upload_bytes, Path(cfg.paths.output_dir)
        )
        demo.warm_up()
        sock = open_socket(cfg.host, cfg.port)
    except DigitsError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(2)
    log.info("checkpoint %s; ready in %.1f s", path, time.perf_counter() - STARTED)
    print(f"demo: open {url_of(sock)} (Ctrl-C stops it)", flush=True)
    serve(demo, sock, cfg)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "demo")
    main()
