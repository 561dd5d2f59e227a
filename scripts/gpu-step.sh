# Sourced by the GPU check scripts: step NAME SECONDS CMD... runs CMD under a time limit and
# appends its output, with the command, start time and exit status, to $out/NAME.txt.
step() {
  local name=$1 t=$2
  shift 2
  echo "## $* (at ${SECONDS}s)" >>"$out/$name.txt"
  timeout "$t" "$@" >>"$out/$name.txt" 2>&1
  echo "## rc $? at ${SECONDS}s" >>"$out/$name.txt"
}
