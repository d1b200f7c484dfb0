from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JPEG: _ClassVar[Encoding]
    RAW: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]
JPEG: Encoding
RAW: Encoding
PNG: Encoding

class Tile(_message.Message):
    __slots__ = ("item_id", "encoding", "data", "height", "width", "channels", "dtype")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    encoding: Encoding
    data: bytes
    height: int
    width: int
    channels: int
    dtype: str
    def __init__(self, item_id: _Optional[int] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., data: _Optional[bytes] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., dtype: _Optional[str] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("frame_id", "tiles", "time_scale")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    tiles: _containers.RepeatedCompositeFieldContainer[Tile]
    time_scale: float
    def __init__(self, frame_id: _Optional[int] = ..., tiles: _Optional[_Iterable[_Union[Tile, _Mapping]]] = ..., time_scale: _Optional[float] = ...) -> None: ...

class TileResult(_message.Message):
    __slots__ = ("item_id", "boxes", "scores", "service_s", "compute_s", "started", "finished", "overrun", "decode_s")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    boxes: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedScalarFieldContainer[float]
    service_s: float
    compute_s: float
    started: float
    finished: float
    overrun: bool
    decode_s: float
    def __init__(self, item_id: _Optional[int] = ..., boxes: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[float]] = ..., service_s: _Optional[float] = ..., compute_s: _Optional[float] = ..., started: _Optional[float] = ..., finished: _Optional[float] = ..., overrun: _Optional[bool] = ..., decode_s: _Optional[float] = ...) -> None: ...

class DetectReply(_message.Message):
    __slots__ = ("results", "received", "sent", "queue", "speed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TileResult]
    received: float
    sent: float
    queue: int
    speed: float
    def __init__(self, results: _Optional[_Iterable[_Union[TileResult, _Mapping]]] = ..., received: _Optional[float] = ..., sent: _Optional[float] = ..., queue: _Optional[int] = ..., speed: _Optional[float] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node", "model", "device", "device_kind", "emulated", "time_scale", "queue", "speed", "processed", "busy_s", "overruns", "compute_tile_ms", "profile_tile_ms", "pid", "ready")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_KIND_FIELD_NUMBER: _ClassVar[int]
    EMULATED_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    BUSY_S_FIELD_NUMBER: _ClassVar[int]
    OVERRUNS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TILE_MS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_TILE_MS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    node: str
    model: str
    device: str
    device_kind: str
    emulated: bool
    time_scale: float
    queue: int
    speed: float
    processed: int
    busy_s: float
    overruns: int
    compute_tile_ms: float
    profile_tile_ms: float
    pid: int
    ready: bool
    def __init__(self, node: _Optional[str] = ..., model: _Optional[str] = ..., device: _Optional[str] = ..., device_kind: _Optional[str] = ..., emulated: _Optional[bool] = ..., time_scale: _Optional[float] = ..., queue: _Optional[int] = ..., speed: _Optional[float] = ..., processed: _Optional[int] = ..., busy_s: _Optional[float] = ..., overruns: _Optional[int] = ..., compute_tile_ms: _Optional[float] = ..., profile_tile_ms: _Optional[float] = ..., pid: _Optional[int] = ..., ready: _Optional[bool] = ...) -> None: ...
