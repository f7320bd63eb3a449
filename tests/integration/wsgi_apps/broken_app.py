# SPDX-License-Identifier: Apache-2.0
"""An application whose import fails, as a broken deploy's would."""

import this_module_does_not_exist  # noqa: F401

application = None
