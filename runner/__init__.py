"""hunt-runner: scheduled Microsoft Defender advanced hunting, within the quotas."""

from __future__ import annotations

__version__ = "0.1.0"
