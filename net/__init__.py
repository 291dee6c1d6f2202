"""p2pgo's network layer: trio + py-libp2p node, signed gossip, blob transfer, asyncio bridge."""

from net._blob import BLOB_PROTOCOL, BlobServer, BlobServerStats
from net._blobstore import BlobStore, DirectoryBlobStore, MemoryBlobStore, blob_digest
from net._bridge import BridgeClosed, NetBridge
from net._config import LOOPBACK_LISTEN, NodeConfig, default_data_dir
from net._envelope import (
    Accepted,
    EnvelopeVerifier,
    Rejected,
    Rejection,
    RejectionCounters,
    Signer,
    Verdict,
    payload_id,
)
from net._errors import BlobError, ConfigError, IdentityError, NetError, ProtocolError
from net._identity import Identity
from net._node import ANNOUNCE_TOPIC, Node, NodeStats, Received
from net._wire import (
    MAX_MESSAGE_BYTES,
    Ack,
    BlobChunk,
    BlobManifest,
    BlobNotFound,
    BlobRefused,
    BlobRequest,
    Hello,
    Message,
    RoundAnnouncement,
    SignedEnvelope,
    decode,
    encode,
)

__all__ = [
    "ANNOUNCE_TOPIC",
    "BLOB_PROTOCOL",
    "LOOPBACK_LISTEN",
    "MAX_MESSAGE_BYTES",
    "Accepted",
    "Ack",
    "BlobChunk",
    "BlobError",
    "BlobManifest",
    "BlobNotFound",
    "BlobRefused",
    "BlobRequest",
    "BlobServer",
    "BlobServerStats",
    "BlobStore",
    "BridgeClosed",
    "ConfigError",
    "DirectoryBlobStore",
    "EnvelopeVerifier",
    "Hello",
    "Identity",
    "IdentityError",
    "MemoryBlobStore",
    "Message",
    "NetBridge",
    "NetError",
    "Node",
    "NodeConfig",
    "NodeStats",
    "ProtocolError",
    "Received",
    "Rejected",
    "Rejection",
    "RejectionCounters",
    "RoundAnnouncement",
    "SignedEnvelope",
    "Signer",
    "Verdict",
    "blob_digest",
    "decode",
    "default_data_dir",
    "encode",
    "payload_id",
]
