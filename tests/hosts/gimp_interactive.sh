#!/bin/sh
# Run gimp-console (arguments: its command line) with an X display (Xvfb) so plug-in dialogs can open, while a
# responder plays the user: MATTEBOX_RESPOND="TITLE_REGEX=KEY;TITLE_REGEX=KEY" sends each KEY (xdotool key name)
# to the first visible window whose title matches, in order. Used by tests/test_gimp_host.py inside the chroot.
set -u
displayfile=$(mktemp)
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$displayfile" >/dev/null 2>&1 &
xvfb=$!
for _ in $(seq 100); do [ -s "$displayfile" ] && break; sleep 0.05; done
DISPLAY=":$(cat "$displayfile")"
export DISPLAY
rm -f "$displayfile"
(
  IFS=';'
  set -- ${MATTEBOX_RESPOND:-}
  unset IFS
  for step in "$@"; do
    title=${step%=*}
    key=${step##*=}
    for _ in $(seq 300); do
      window=$(xdotool search --onlyvisible --name "$title" 2>/dev/null | head -n 1)
      if [ -n "$window" ]; then
        sleep 0.5
        echo "responder: '$title' is $(xdotool getwindowgeometry "$window" | sed -n 's/.*Geometry: //p')" >&2
        xdotool windowfocus --sync "$window" key "$key"
        echo "responder: sent $key to '$title'" >&2
        break
      fi
      sleep 0.1
    done
  done
) &
responder=$!
"$@"
status=$?
kill "$responder" "$xvfb" 2>/dev/null
wait 2>/dev/null
exit $status
