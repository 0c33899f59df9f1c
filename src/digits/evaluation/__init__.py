"""After training: evaluate a checkpoint (``run``), split by concern: the model back from its checkpoint
(``loading``), the numbers (``metrics``), the pictures (``figures``), the user's own digits (``user_images``)."""
