"""digits: a small CNN on MNIST, and three cross-entropy losses that are the same function."""
