#!/bin/bash
# usage: prof-api.sh <priority-header>
set -e
cd /work/main
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/floodgate_shedcost REDIS_URL=redis://127.0.0.1:6379/0 STREAM_KEY=prof:events DEAD_LETTER_STREAM_KEY=prof:dl CONSUMER_GROUP=prof LOG_LEVEL=warn API_PROCESSES=1 PORT=18080 HOST=127.0.0.1 METRICS_PORT=0 SHED_MODE=off
rm -rf /tmp/prof && mkdir -p /tmp/prof
KEY=$(node bin/floodgate.js keys create --tenant prof 2>/dev/null | grep -o 'fgk_[A-Za-z0-9_-]*' | head -1)
node --cpu-prof --cpu-prof-dir=/tmp/prof bin/floodgate.js api & PID=$!
sleep 4
npx autocannon -c 50 -d 8 -m POST -H "content-type: application/json" -H "authorization: Bearer $KEY" -H "x-priority: $1" -b '{"type":"page_view","source":"web","data":{"path":"/a"}}' http://127.0.0.1:18080/v1/events 2>&1 | grep -E "Req/Sec|2xx|4xx" 
kill -INT $PID; wait $PID || true
redis-cli del prof:events >/dev/null
