"""A page where you draw a digit and watch the network's logits become a loss.

python scripts/demo.py ckpt_path=outputs/train/<run>            # prints http://127.0.0.1:8000/
python scripts/demo.py ckpt_path=outputs/train/<run> port=0     # any free port
"""

import logging
import time
from pathlib import Path

from digits.entry import run

log = logging.getLogger("digits")


def main(cfg, started: float) -> None:
    import torch

    from digits.demo.app import Demo, open_socket, serve, url_of, validate_demo_config
    from digits.evaluation.loading import choose_device, load_module, resolve_checkpoint

    validate_demo_config(cfg)
    torch.set_num_threads(cfg.threads)
    path = resolve_checkpoint(cfg.ckpt_path)
    module = load_module(path, choose_device(cfg.device))
    demo = Demo(module, path, cfg.max_upload_bytes, Path(cfg.paths.output_dir))
    demo.warm_up()
    sock = open_socket(cfg.host, cfg.port)
    log.info("checkpoint %s; ready in %.1f s", path, time.perf_counter() - started)
    print(f"demo: open {url_of(sock)} (Ctrl-C stops it)", flush=True)
    serve(demo, sock, cfg)


if __name__ == "__main__":
    run(main, "demo")
