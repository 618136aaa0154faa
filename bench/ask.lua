-- wrk script: POST /v1/ask with dev-set questions in turn.
-- Bodies come from the file named by $WRK_BODIES (one JSON request per line, written by bench/load.py);
-- without it, a few dev questions built in here.
local bodies = {}
local path = os.getenv("WRK_BODIES")
if path then
  for line in io.lines(path) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
end
if #bodies == 0 then
  bodies = {
    '{"question": "Was Stalin\'s industrialization a success?", "top_k": 10}',
    '{"question": "Who formed the ruling triumvirate?", "top_k": 10}',
    '{"question": "What did the Communist Party of China say about Stalin\'s mistakes?", "top_k": 10}',
    '{"question": "Which scholar is cited as showing that Stalin fits the clinical profile of a paranoid personality?", "top_k": 10}',
  }
end

local counter = 0

function init(args)
  -- threads start at different offsets so they do not ask the same question at the same moment
  counter = math.random(#bodies)
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", "/v1/ask", {["Content-Type"] = "application/json"}, bodies[counter])
end


function done(summary, latency, requests)
  -- non-2xx responses: wrk prints "Non-2xx or 3xx responses: N" itself (bench/load.py reads it)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, ' ..
    '"max_ms": %.2f, "mean_ms": %.2f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
