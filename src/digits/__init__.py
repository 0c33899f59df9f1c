"""digits: a small CNN on MNIST, and three cross-entropy losses that are the same function."""

import sys
import types

# TensorBoard's event writer imports TensorFlow whenever it is installed: seconds of start-up, and a
# segmentation fault when torch's triton loads after it. An importable ``tensorboard.compat.notf`` (its own
# switch) makes it use its TensorFlow-free stub, which is all an event writer needs.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
