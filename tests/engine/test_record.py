"""GameRecord: replay, canonical CBOR, content id and the hash chain."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import blake3
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._coords import Point
from engine._record import GameRecord, Player, RecordError
from engine._rules import Color, IllegalMove, Move, Position, Rules, fixed_handicap_points

RULE_NAMES = ("chinese", "japanese", "tromp-taylor", "aga", "new-zealand")
# Text that survives SGF's text rules unchanged (no tabs, no CR) but still needs escaping.
NAME_TEXT = st.text(alphabet=st.sampled_from("abcXYZ019éß漢 -.+"), min_size=0, max_size=10).map(
    lambda s: " ".join(s.split())
)
COMMENT_TEXT = st.text(alphabet=st.sampled_from("ab Z9é]\\:\n[;)("), min_size=1, max_size=20)


@st.composite
def legal_games(draw: st.DrawFn, min_size: int = 5, max_size: int = 19) -> GameRecord:
    """A random game whose every move is legal (random points; an illegal one passes)."""
    size = draw(st.integers(min_size, max_size))
    rules = Rules.named(
        draw(st.sampled_from(RULE_NAMES)), komi=draw(st.sampled_from([0.0, 0.5, 6.5, 7.5, -2.0]))
    )
    handicap_pts: list[Point] = []
    if size >= 7 and draw(st.booleans()):
        limit = 9 if size % 2 == 1 and size > 7 else 4
        handicap_pts = fixed_handicap_points(size, draw(st.integers(2, limit)))
    pos = Position(size, rules).with_setup(
        handicap_pts, (), Color.WHITE if handicap_pts else Color.BLACK
    )
    first = pos.to_play
    moves: list[Move] = []
    for _ in range(draw(st.integers(0, 40))):
        if pos.is_game_over:
            break
        index = draw(st.integers(0, size * size))  # size * size: pass
        move = Move.pass_(pos.to_play)
        if index < size * size:
            candidate = Move.play(pos.to_play, divmod(index, size))
            if pos.is_legal(candidate):
                move = candidate
        pos = pos.play(move)
        moves.append(move)
    comment_at = draw(st.lists(st.integers(0, len(moves)), max_size=3))
    return GameRecord(
        size=size,
        rules=rules,
        handicap=len(handicap_pts),
        setup_black=tuple(handicap_pts),
        first_player=first,
        black=Player(draw(NAME_TEXT), draw(st.sampled_from(["", "3d", "15k"]))),
        white=Player(draw(NAME_TEXT), ""),
        date=draw(st.sampled_from(["", "2024-05-01", "2023-12-31,2024-01-01"])),
        result=draw(st.sampled_from(["", "B+R", "W+0.5", "0", "Void"])),
        moves=tuple(moves),
        comments={i: draw(COMMENT_TEXT) for i in comment_at},
        game_id=draw(st.sampled_from(["", "abc", "5f0c"])),
    )


def small_game() -> GameRecord:
    record = GameRecord(size=9, rules=Rules.named("japanese"), game_id="g1")
    for move in (
        Move.play(Color.BLACK, (2, 2)),
        Move.play(Color.WHITE, (6, 6)),
        Move.play(Color.BLACK, (2, 6)),
        Move.pass_(Color.WHITE),
        Move.play(Color.BLACK, (6, 2)),
    ):
        record = record.with_move(move)
    return record.with_comment(0, "root").with_comment(3, "third")


# ---- values and replay --------------------------------------------------------------


def test_replay_gives_the_final_position_and_positions_every_step() -> None:
    record = small_game()
    positions = list(record.positions())
    assert len(positions) == len(record.moves) + 1
    final = record.replay()
    assert final.same_board(positions[-1])
    assert final[(2, 2)] is Color.BLACK and final[(6, 6)] is Color.WHITE
    assert final.history() == list(record.moves)
    assert positions[0].cells() == bytes(81)


def test_setup_stones_are_normalised_and_placed() -> None:
    record = GameRecord(size=9, setup_black=((4, 4), (2, 2), (4, 4)), setup_white=[(0, 1)])  # type: ignore[arg-type]
    assert record.setup_black == ((2, 2), (4, 4))
    assert record.setup_white == ((0, 1),)
    root = record.root_position()
    assert root[(4, 4)] is Color.BLACK and root[(0, 1)] is Color.WHITE


def test_from_position_recovers_setup_and_moves() -> None:
    pos = Position(9).with_setup([(2, 2), (6, 6)], [], Color.WHITE)
    pos = pos.play(Move.play(Color.WHITE, (4, 4))).play(Move.pass_(Color.BLACK))
    record = GameRecord.from_position(pos, handicap=2, game_id="x")
    assert record.setup_black == ((2, 2), (6, 6))
    assert record.first_player is Color.WHITE
    assert record.moves == (Move.play(Color.WHITE, (4, 4)), Move.pass_(Color.BLACK))
    assert record.replay().same_board(pos)


def test_new_gives_a_fresh_game_id_and_handicap() -> None:
    a = GameRecord.new(9, handicap_points=fixed_handicap_points(9, 2))
    b = GameRecord.new(9)
    assert a.game_id and b.game_id and a.game_id != b.game_id
    assert a.handicap == 2 and a.first_player is Color.WHITE and len(a.setup_black) == 2


def test_illegal_move_is_named_by_number() -> None:
    record = small_game().with_move(Move.play(Color.WHITE, (2, 2)))
    with pytest.raises(RecordError, match=r"move 6 \(W C7\) is illegal: point is occupied"):
        record.replay()
    with pytest.raises(RecordError, match="move 6"):
        GameRecord.from_cbor(record.to_cbor())
    assert isinstance(RecordError("x"), ValueError)
    assert not isinstance(RecordError("x"), IllegalMove)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 26},
        {"size": 1},
        {"size": 9, "setup_black": ((9, 0),)},
        {"size": 9, "setup_black": ((1, 1),), "setup_white": ((1, 1),)},
        {"size": 9, "moves": (Move.play(Color.BLACK, (0, 9)),)},
        {"size": 9, "comments": {1: "after a move that is not there"}},
        {"size": 9, "first_player": Color.EMPTY},
        {"size": 9, "rules": Rules(komi=float("nan"))},
        {"size": 9, "handicap": -1},
    ],
)
def test_bad_values_are_record_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(RecordError):
        GameRecord(**kwargs)  # type: ignore[arg-type]


def test_integer_komi_is_normalised_so_bytes_are_canonical() -> None:
    a = GameRecord(size=9, rules=Rules("chinese", 7))
    b = GameRecord(size=9, rules=Rules("chinese", 7.0))
    assert a == b and a.to_cbor() == b.to_cbor()
    assert type(a.rules.komi) is float


def test_is_finished() -> None:
    assert not small_game().is_finished
    assert small_game().with_result("B+R").is_finished
    assert small_game().with_move(Move.resign(Color.WHITE)).is_finished
    two = small_game().with_move(Move.pass_(Color.WHITE)).with_move(Move.pass_(Color.BLACK))
    assert two.is_finished


def test_records_pickle_and_copy() -> None:
    record = small_game()
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record


def test_comments_are_read_only_and_records_hash() -> None:
    record = small_game()
    with pytest.raises(TypeError):
        record.comments[0] = "x"  # type: ignore[index]
    assert hash(record) == hash(GameRecord.from_cbor(record.to_cbor()))


# ---- canonical bytes -----------------------------------------------------------------


def test_cbor_round_trip_and_content_id() -> None:
    record = small_game()
    data = record.to_cbor()
    assert cbor2.loads(data)["v"] == 1 and cbor2.loads(data)["kind"] == "game"
    again = GameRecord.from_cbor(data)
    assert again == record
    assert record.record_id == blake3.blake3(data).hexdigest()
    assert len(record.record_id) == 64
    assert record.with_result("W+R").record_id != record.record_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legal_games())
def test_cbor_round_trip_of_random_games(record: GameRecord) -> None:
    data = record.to_cbor()
    again = GameRecord.from_cbor(data)
    assert again == record
    assert again.to_cbor() == data
    assert again.chain() == record.chain()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decoding_arbitrary_bytes_gives_a_record_or_record_error(data: bytes) -> None:
    try:
        record = GameRecord.from_cbor(data)
    except RecordError:
        return
    assert record.to_cbor() == data


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_decoding_mutated_records_gives_record_error_or_a_different_record(
    data: st.DataObject,
) -> None:
    original = small_game().to_cbor()
    where = data.draw(st.integers(0, len(original) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(original)
    mutated[where] ^= flip
    try:
        record = GameRecord.from_cbor(bytes(mutated))
    except RecordError:
        return
    assert record.to_cbor() == bytes(mutated) != original


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"v": 2, "kind": "game"}),
        cbor2.dumps({"v": 1, "kind": "model"}),
        cbor2.dumps({"v": 1, "kind": "game", "size": 9}),
        b"\x9f" * 50_000,  # deep indefinite nesting
        "not bytes",
    ],
)
def test_malformed_bytes_are_record_errors(data: bytes) -> None:
    with pytest.raises(RecordError):
        GameRecord.from_cbor(data)


def test_non_canonical_encoding_is_rejected() -> None:
    data = small_game().to_cbor()
    obj = cbor2.loads(data)
    loose = cbor2.dumps(dict(reversed(list(obj.items()))))  # not key-sorted
    assert loose != data
    with pytest.raises(RecordError, match="canonical"):
        GameRecord.from_cbor(loose)


def test_a_wrong_link_in_the_bytes_is_reported_by_move_number() -> None:
    obj = cbor2.loads(small_game().to_cbor())
    obj["moves"][2][0] = bytes(32)
    with pytest.raises(RecordError, match="hash chain broken at move 3"):
        GameRecord.from_cbor(cbor2.dumps(obj, canonical=True))


def test_editing_a_move_in_the_bytes_breaks_the_chain() -> None:
    obj = cbor2.loads(small_game().to_cbor())
    obj["moves"][1][3] = 5  # W (6,6) -> (5,6), a legal move, but the next link disagrees
    with pytest.raises(RecordError, match="hash chain broken at move 3"):
        GameRecord.from_cbor(cbor2.dumps(obj, canonical=True))


# ---- the hash chain ------------------------------------------------------------------


def test_chain_shape_and_genesis() -> None:
    record = small_game()
    links = record.chain()
    assert len(links) == len(record.moves) + 1
    assert links[0] == blake3.blake3(record.header_bytes()).digest()
    assert record.head == links[-1]
    assert len(set(links)) == len(links)
    assert all(len(link) == 32 for link in links)
    assert record.verify_chain(links)


def test_chain_detects_edit_reorder_truncation_and_extension() -> None:
    record = small_game()
    links = record.chain()
    moves = list(record.moves)
    edited = dataclasses.replace(
        record, moves=(*moves[:1], Move.play(Color.WHITE, (5, 5)), *moves[2:])
    )
    swapped = dataclasses.replace(record, moves=(moves[2], moves[1], moves[0], *moves[3:]))
    truncated = dataclasses.replace(record, moves=tuple(moves[:-1]), comments={})
    extended = record.with_move(Move.pass_(Color.WHITE))
    for other in (edited, swapped, truncated, extended):
        assert not other.verify_chain(links)
        assert not record.verify_chain(other.chain())
    assert not record.verify_chain(links[:-1])
    assert not record.verify_chain([*links[:2], links[3], links[2], *links[4:]])
    assert extended.extends(links) and not record.extends(extended.chain())
    assert not edited.extends(links)


def test_annotations_stay_outside_the_chain_but_the_header_does_not() -> None:
    record = small_game()
    annotated = record.with_result("B+R").with_comment(1, "hm")
    annotated = dataclasses.replace(annotated, date="2024-01-01")
    assert annotated.chain() == record.chain()
    for changed in (
        dataclasses.replace(record, black=Player("someone else")),
        dataclasses.replace(record, rules=record.rules.with_komi(0.5)),
        dataclasses.replace(record, game_id="g2"),
        dataclasses.replace(record, setup_white=((0, 0),)),
    ):
        assert changed.chain()[0] != record.chain()[0]
        assert not changed.verify_chain(record.chain())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legal_games(), st.data())
def test_any_prefix_is_extended_and_any_single_edit_detected(
    record: GameRecord, data: st.DataObject
) -> None:
    links = record.chain()
    cut = data.draw(st.integers(0, len(record.moves)))
    prefix = dataclasses.replace(record, moves=record.moves[:cut], comments={})
    assert record.extends(prefix.chain())
    if record.moves:
        i = data.draw(st.integers(0, len(record.moves) - 1))
        m = record.moves[i]
        other = Move.pass_(m.color) if not m.is_pass else Move.play(m.color, (0, 0))
        edited = dataclasses.replace(
            record, moves=(*record.moves[:i], other, *record.moves[i + 1 :])
        )
        assert not edited.verify_chain(links)
        assert edited.chain()[: i + 1] == links[: i + 1]
