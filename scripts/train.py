"""Train the CNN on MNIST. Examples:

python scripts/train.py
python scripts/train.py loss=manual trainer.max_epochs=3 data.batch_size=128
python scripts/train.py -m loss=cross_entropy,nll,manual
python scripts/train.py resume=outputs/train/<run>       # continue an interrupted run
python scripts/train.py trainer=ddp trainer.devices=2     # two processes
"""

from digits.commands import train

if __name__ == "__main__":
    train()
