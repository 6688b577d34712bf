"""Lambda handler: Monthly DR drill (first Sunday 06:00): ``pgrunbook dr-drill``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.handler.
"""

from pgrunbook.handler import make_handler

handler = make_handler("dr-drill")
