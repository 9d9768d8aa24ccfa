#!/bin/sh
# Run gimp-console (arguments: its command line) with an X display (Xvfb) so plug-in dialogs can open, while a
# responder plays the user: MATTEBOX_RESPOND="TITLE_REGEX=KEY;TITLE_REGEX=KEY" sends each KEY (xdotool key name)
# to the first visible window whose title matches, in order. Used by tests/test_gimp_host.py inside the chroot.
# No step trusts a fixed delay (CI is a loaded machine): each waits up to 2 minutes for what it needs, and a key is
# pressed again every 5 s until its window has closed, since a key sent while the window is still being realised
# can be lost.
set -u
displayfile=$(mktemp)
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$displayfile" >/dev/null 2>&1 &
xvfb=$!
for _ in $(seq 2400); do [ -s "$displayfile" ] && break; sleep 0.05; done
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
    sent=0
    for tick in $(seq 1200); do
      window=$(xdotool search --onlyvisible --name "$title" 2>/dev/null | head -n 1)
      if [ -z "$window" ]; then
        [ "$sent" -gt 0 ] && break  # closed after the key
      elif [ "$sent" -eq 0 ] || [ $((tick - sent)) -ge 50 ]; then
        if [ "$sent" -eq 0 ]; then
          sleep 0.5
          echo "responder: '$title' is $(xdotool getwindowgeometry "$window" | sed -n 's/.*Geometry: //p')" >&2
        fi
        xdotool windowfocus --sync "$window" key "$key"
        echo "responder: sent $key to '$title'" >&2
        sent=$tick
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
