-- wrk script for bench/intake.py: signed GitHub `issues` deliveries, each with its own
-- X-GitHub-Delivery (the body, hence the signature, is the same for all).
-- Arguments after `--`: the body's file and its X-Hub-Signature-256.
-- Prints one JSON line at the end: requests, non-2xx/3xx answers, socket errors, microseconds.
local counter = 0
local prefix = string.format("%08x", math.random(0, 0x7fffffff))
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "issues"
  wrk.headers["X-Hub-Signature-256"] = args[2]
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("%s-%d-%d", prefix, tid, counter)
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "non2xx": %d, "socket_errors": %d, "us": %d}\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration))
end
