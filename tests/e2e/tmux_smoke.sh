#!/usr/bin/env bash
# Smoke test of the real p2pgo-tui in a real terminal: start it in a detached tmux
# session, wait for the board, play two moves with send-keys, check the screen with
# capture-pane, quit. Exits non-zero with the screen and the log on any failure.
#
#   tests/e2e/tmux_smoke.sh            (PYTHON=... picks the interpreter; default .venv/bin/python)
set -euo pipefail
export LC_ALL=C.UTF-8
cd "$(dirname "$0")/../.."

PY=${PYTHON:-.venv/bin/python}
SOCKET="p2pgo-smoke-$$"   # a private tmux server: never touches the user's sessions
SESSION=smoke
DATA=$(mktemp -d)
TMUX_CMD=(tmux -L "$SOCKET")

cleanup() {
    "${TMUX_CMD[@]}" kill-server 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

screen() { "${TMUX_CMD[@]}" capture-pane -p -t "$SESSION"; }

fail() {
    echo "tmux smoke: FAIL: $*" >&2
    echo "--- screen ---" >&2
    screen >&2 || true
    echo "--- log ---" >&2
    tail -n 40 "$DATA/logs/p2pgo-tui.log" >&2 2>/dev/null || true
    exit 1
}

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local what=$1 timeout=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
        sleep 0.05 # the polling interval, not a wait for something to happen
    done
}

board_shown() { screen | grep -Eq 'A +B +C +D +E +F +G +H +J' && screen | grep -q 'Move 0'; }
# Stones on the board: everything right of the side panel's border (▏) is cut off,
# since the panel shows stone swatches next to the players.
stones() { screen | sed 's/▏.*//' | grep -o -e '●' -e '○' -e '◉' | wc -l; }
move_number() { screen | grep -Eo 'Move [0-9]+' | head -n 1 | grep -Eo '[0-9]+' || echo -1; }
at_least_move() { (($(move_number) >= $1)); }
# The app's exit status, written by the pane's shell (tmux 3.3 sometimes never reaps
# the pane's process, so #{pane_dead_status} cannot be relied on).
STATUS_FILE=$DATA/exit-status
app_exited() { [[ -s $STATUS_FILE ]]; }

command -v tmux >/dev/null || fail "tmux is not installed"
[[ -x $PY ]] || command -v "$PY" >/dev/null || fail "no Python at $PY"

# A shell first, so that the pane is kept after the app exits (its last screen helps
# a failure report).
"${TMUX_CMD[@]}" new-session -d -s "$SESSION" -x 120 -y 40
"${TMUX_CMD[@]}" set-option -t "$SESSION" remain-on-exit on >/dev/null
start=$(date +%s.%N)
"${TMUX_CMD[@]}" respawn-pane -k -t "$SESSION" \
    "env PYTHONPATH=. TERM=xterm-256color $PY -m p2pgo_tui --data-dir $DATA --size 9 --seed 1; echo \$? > $STATUS_FILE"

wait_for "the board (column letters)" 20 board_shown
ready=$(date +%s.%N)
awk -v a="$start" -v b="$ready" 'BEGIN { printf "tmux smoke: board on screen after %.2f s\n", b - a }'
[[ $(stones) == 0 ]] || fail "a new game should start with an empty board"
[[ $(move_number) == 0 ]] || fail "a new game should be at move 0"

# since START_TIME: how long a step took, for the output (timings help a failure report).
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# Move 1: Enter plays at the cursor (the centre); the AI replies. The first reply waits
# for the model server (imports torch and loads the model: seconds on a busy machine).
"${TMUX_CMD[@]}" send-keys -t "$SESSION" Enter
moved=$(date +%s.%N)
wait_for "the AI's reply (move 2)" 20 at_least_move 2
echo "tmux smoke: the AI's first reply after $(since "$moved") s"
[[ $(stones) == 2 ]] || fail "expected 2 stones after one move each, saw $(stones)"

# Move 2: ask for a hint (it moves the cursor to a legal point), then play it.
"${TMUX_CMD[@]}" send-keys -t "$SESSION" t
hint_shown() { screen | grep -Eq 'Hint [BW] [A-T][0-9]+ —'; }
wait_for "the hint" 20 hint_shown
"${TMUX_CMD[@]}" send-keys -t "$SESSION" Enter
wait_for "the AI's second reply (move 4)" 20 at_least_move 4
[[ $(stones) -ge 3 ]] || fail "expected the new stones on the board, saw $(stones)"
screen | grep -q 'Traceback' && fail "a traceback is on the screen"
summary="move $(move_number), $(stones) stones"

"${TMUX_CMD[@]}" send-keys -t "$SESSION" q
quit=$(date +%s.%N)
wait_for "the app to exit" 20 app_exited
echo "tmux smoke: exited $(since "$quit") s after q"
status=$(<"$STATUS_FILE")
[[ $status == 0 ]] || fail "the app exited with status $status"
[[ -s $DATA/logs/p2pgo-tui.log ]] || fail "no log file in the data directory"
echo "tmux smoke: OK ($summary)"
