# bash completion for forkpoolctl(8). Installed as
# /usr/share/bash-completion/completions/forkpoolctl (loaded on demand by bash-completion).
#
# Commands, options and signal names are fixed; pool names and worker numbers are asked
# from the running master (`forkpoolctl --json status`), on the socket given on the
# command line (-s/--socket, -c/--config) or the one forkpoolctl would use anyway. Pool names are
# letters, digits, "_", "-" and "." (forkpool.toml(5)), so the compact JSON reply can be
# read with grep and sed: no JSON tool is needed.

# The signal names the master accepts (config/names.cpp), for `kill POOL WORKER SIGNAL`.
_forkpoolctl_signals="HUP INT QUIT ABRT KILL USR1 SEGV USR2 PIPE ALRM TERM CONT STOP TSTP TTIN TTOU WINCH XCPU PWR BUS"
_forkpoolctl_commands="status top events scale restart stop start kill reload shutdown upgrade log-level metrics version help"
_forkpoolctl_options="-s --socket -c --config --json --timeout --no-wait --version -h --help"

# Asks the master for `status`; $1: the pool (optional). Quiet and quick when no master runs.
_forkpoolctl_status_json() {
  local -a socket=()
  local i
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    case "${COMP_WORDS[i]}" in
      -s | --socket) socket=(-s "${COMP_WORDS[i + 1]}") ;;
      --socket=*) socket=(-s "${COMP_WORDS[i]#--socket=}") ;;
      -c | --config) socket=(-c "${COMP_WORDS[i + 1]}") ;;
      --config=*) socket=(-c "${COMP_WORDS[i]#--config=}") ;;
    esac
  done
  "${COMP_WORDS[0]}" "${socket[@]}" --timeout 1 --json status ${1:+"$1"} 2>/dev/null
}

_forkpoolctl_pools() {
  _forkpoolctl_status_json | grep -o '"name":"[A-Za-z0-9_.-]*"' | sed 's/^"name":"\(.*\)"$/\1/'
}

_forkpoolctl_workers() {
  _forkpoolctl_status_json "$1" | grep -o '"worker":[0-9]*' | sed 's/^"worker"://'
}

_forkpoolctl() {
  local cur prev
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD - 1]}"

  # The value of an option that takes one.
  case "$prev" in
    -s | --socket | -c | --config)
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return 0
      ;;
    --timeout | --interval)
      COMPREPLY=()
      return 0
      ;;
  esac

  # Find the command and the positional arguments typed after it so far.
  local cmd="" i word
  local -a args=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    case "$word" in
      -s | --socket | -c | --config | --timeout | --interval) ((i++)) ;;
      -*) ;;
      *)
        if [[ -z "$cmd" ]]; then cmd="$word"; else args+=("$word"); fi
        ;;
    esac
  done

  if [[ "$cur" == -* ]]; then
    local opts="$_forkpoolctl_options"
    [[ "$cmd" == top ]] && opts="$opts --once --interval"
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    return 0
  fi

  if [[ -z "$cmd" ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_forkpoolctl_commands" -- "$cur")
    return 0
  fi

  local n=${#args[@]} words=""
  case "$cmd" in
    status) ((n == 0)) && words="$(_forkpoolctl_pools)" ;;
    stop | start) ((n == 0)) && words="all $(_forkpoolctl_pools)" ;;
    scale) ((n == 0)) && words="$(_forkpoolctl_pools)" ;;
    help) ((n == 0)) && words="$_forkpoolctl_commands" ;;
    restart)
      ((n == 0)) && words="all $(_forkpoolctl_pools)"
      ((n == 1)) && words="$(_forkpoolctl_workers "${args[0]}")"
      ;;
    kill)
      ((n == 0)) && words="$(_forkpoolctl_pools)"
      ((n == 1)) && words="$(_forkpoolctl_workers "${args[0]}")"
      ((n == 2)) && words="$_forkpoolctl_signals"
      ;;
    log-level) ((n == 0)) && words="trace debug info warn error critical off" ;;
  esac
  mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
  return 0
}

complete -F _forkpoolctl forkpoolctl
