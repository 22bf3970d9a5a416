"""Command line of the frozen-feature evaluation; the protocols live in
``extrema.evaluation.frozen_eval`` (``python semi_sup/frozen_eval.py --help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import extrema  # noqa: E402,F401  (shims and registration)
from extrema.evaluation.frozen_eval import main, parse_args, run_frozen_eval  # noqa: E402,F401

if __name__ == '__main__':
    main()
