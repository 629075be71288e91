# Sourced by the experiment scripts.
# fit OUT CMD...: CMD writes the checkpoint OUT; skipped once OUT.done marks it finished.
# Training writes OUT after every epoch, so an OUT with its OUT.train resume state and no
# OUT.done is an interrupted run: it continues with --resume OUT (PAM writes OUT only at the end).
fit() {
  local out=$1; shift
  [ -e "$out.done" ] && return 0
  if [ -e "$out" ] && [ -e "$out.train" ]; then "$@" --resume "$out"; else "$@"; fi
  touch "$out.done"
}
