"""digits: a small CNN on MNIST, and three cross-entropy losses that are the same function."""

import sys
import types

# TensorBoard's event writer (torch's SummaryWriter, Lightning's logger) imports TensorFlow whenever it is
# installed (the `interop` extra): seconds of start-up, and a segmentation fault when torch's triton loads
# after it. TensorBoard's own switch, an importable ``tensorboard.compat.notf``, makes it use its
# TensorFlow-free stub, which is all an event writer needs.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
