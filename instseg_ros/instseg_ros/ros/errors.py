"""Errors shared by the ROS layer (no imports, so every module can use them without cycles)."""


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing or mismatched weights, bad class list).

    The message is one line saying what is wrong and what to pass; ``entry.spin_node`` prints it
    and exits with code 2 (no traceback).
    """
