"""Building blocks for near-real-time moderation of live streams.

* :class:`LiveSource` decodes one live source continuously into audio blocks stamped with
  stream time, reconnecting through outages and recording each one as a :class:`Gap`;
* :class:`SegmentRing` keeps the source's last minutes on disk so clips can be cut;
* :class:`WebhookSink` pushes records to an HTTP endpoint, signed, retried, never blocking.
"""

from pipeline.live.ingest import AudioBlock, Gap, LiveSource, ReconnectPolicy
from pipeline.live.ring import Segment, SegmentRing
from pipeline.live.webhook import WebhookSink, WebhookStats, sign, verify_signature

__all__ = [
    "AudioBlock",
    "Gap",
    "LiveSource",
    "ReconnectPolicy",
    "Segment",
    "SegmentRing",
    "WebhookSink",
    "WebhookStats",
    "sign",
    "verify_signature",
]
