"""A page where you draw a digit and watch the network's logits become a loss.

python scripts/demo.py ckpt_path=outputs/train/<run>            # prints http://127.0.0.1:8000/
python scripts/demo.py ckpt_path=outputs/train/<run> port=0     # any free port
"""

from digits.commands import demo

if __name__ == "__main__":
    demo()
