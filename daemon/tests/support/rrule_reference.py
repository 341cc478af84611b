"""Independent reference for `sirend schedule next`: python-dateutil's RRULE implementation
with the standard library's zoneinfo. Reads one schedule as JSON on stdin
({name, kind, start, rrule, exdates, timezone, after, count}) and prints the same lines as
`sirend schedule next`: instant (RFC 3339 with offset), name, kind."""

import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

s = json.load(sys.stdin)
tz = ZoneInfo(s["timezone"])
start = datetime.fromisoformat(s["start"]).replace(tzinfo=tz)
rules = rrulestr("RRULE:" + s["rrule"], dtstart=start, forceset=True)
for ex in s["exdates"]:
    rules.exdate(datetime.fromisoformat(ex).replace(tzinfo=tz))
t = datetime.fromisoformat(s["after"].replace("Z", "+00:00"))
for _ in range(s["count"]):
    t = rules.after(t)
    if t is None:
        break
    # Normalise the offset for the wall time (dateutil keeps the fold-less wall clock).
    local = t.astimezone(tz)
    print(local.isoformat(), s["name"], s["kind"])
