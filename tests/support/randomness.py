"""The suite's random seed: one number for a whole run, drawn anew unless
DYNAMO_TEST_SEED gives it, printed in pytest's header and under each failure.

It seeds every `random.Random` of the tests and the defaults of the reliability
harnesses, and hypothesis outside CI (conftest.py), so that the printed number
replays a run's draws: `DYNAMO_TEST_SEED=N python -m pytest ...`.
"""

import os
import random

SEED_VARIABLE = "DYNAMO_TEST_SEED"
SEED = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
