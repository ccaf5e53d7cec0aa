"""Print the requirements of one optional extra in pyproject.toml.

`pip install -e '.[test]'` would rebuild the compiled package just to add
the test tools; the Makefile installs this list instead.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
print("\n".join(extras[sys.argv[1]]))
