"""p2pgo's policy/value network: config, input features, symmetries, weight files, inference.

Importing this package imports torch (~1-2 s); ``engine`` itself does not, so the rules,
SGF and GTP stay light. Typical use::

    from engine.nn import Predictor, load_weights
    predictor = Predictor(load_weights(data), threads=2)
    prediction = predictor.predict(position, symmetries=ALL_SYMMETRIES)
    prediction.top_k(5), prediction.value
"""

from engine.nn._config import (
    FEATURE_PLANES,
    FIRST_CLASS_SIZES,
    MAX_BOARD_SIZE,
    MIN_BOARD_SIZE,
    ModelConfig,
    ModelFormatError,
)
from engine.nn._dataset import (
    DatasetError,
    ExampleArrays,
    ExampleSet,
    SkippedGame,
    augment_batch,
    build_examples,
    examples_from_record,
    format_visits,
    held_out,
    load_records,
    parse_opening,
    parse_visits,
    records_from_store,
    result_targets,
    split_records,
)
from engine.nn._evaluator import NetworkEvaluator, SearchPlayer
from engine.nn._features import HISTORY_MOVES, KOMI_SCALE, Plane, encode_batch, encode_position
from engine.nn._inference import NeuralPlayer, Prediction, Predictor, legal_mask
from engine.nn._model import OFF_BOARD_LOGIT, SCORE_SCALE, NetOutput, PolicyValueNet
from engine.nn._symmetry import (
    ALL_SYMMETRIES,
    Symmetry,
    transform_planes,
    transform_point,
    transform_policy,
)
from engine.nn._train import (
    LrSchedule,
    Metrics,
    OptimizerKind,
    Progress,
    TrainConfig,
    Trainer,
    TrainResult,
    evaluate,
    pick_device,
    train_local,
)
from engine.nn._weights import (
    FORMAT_KIND,
    FORMAT_VERSION,
    MAX_WEIGHTS_BYTES,
    arrays_to_model,
    decode_weights,
    encode_weights,
    expected_shapes,
    load_arrays,
    load_weights,
    model_to_arrays,
    save_weights,
    weights_id,
)

__all__ = [
    "ALL_SYMMETRIES",
    "FEATURE_PLANES",
    "FIRST_CLASS_SIZES",
    "FORMAT_KIND",
    "FORMAT_VERSION",
    "HISTORY_MOVES",
    "KOMI_SCALE",
    "MAX_BOARD_SIZE",
    "MAX_WEIGHTS_BYTES",
    "MIN_BOARD_SIZE",
    "OFF_BOARD_LOGIT",
    "SCORE_SCALE",
    "DatasetError",
    "ExampleArrays",
    "ExampleSet",
    "LrSchedule",
    "Metrics",
    "ModelConfig",
    "ModelFormatError",
    "NetOutput",
    "NetworkEvaluator",
    "NeuralPlayer",
    "OptimizerKind",
    "Plane",
    "PolicyValueNet",
    "Prediction",
    "Predictor",
    "Progress",
    "SearchPlayer",
    "SkippedGame",
    "Symmetry",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "arrays_to_model",
    "augment_batch",
    "build_examples",
    "decode_weights",
    "encode_batch",
    "encode_position",
    "encode_weights",
    "evaluate",
    "examples_from_record",
    "expected_shapes",
    "format_visits",
    "held_out",
    "legal_mask",
    "load_arrays",
    "load_records",
    "load_weights",
    "model_to_arrays",
    "parse_opening",
    "parse_visits",
    "pick_device",
    "records_from_store",
    "result_targets",
    "save_weights",
    "split_records",
    "train_local",
    "transform_planes",
    "transform_point",
    "transform_policy",
    "weights_id",
]
