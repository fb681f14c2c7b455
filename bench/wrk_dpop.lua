-- wrk script: every request carries a DPoP-bound token and a proof of its own
-- (RFC 9449 §7.1), each proof sent once.
-- Usage: wrk -t N ... -s bench/wrk_dpop.lua URL -- PREFIX METHOD
-- Thread k reads PREFIX.k, one "token proof" line a request (bench/dpop.py writes
-- them just before the run: a proof is good for DPOP_PROOF_MAX_AGE seconds). The
-- headers are built here, before wrk's clock starts, not in request().
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("slot", counter)
end

function init(args)
  wrk.method = args[2] or "GET"
  requests = {}
  for line in io.lines(args[1] .. "." .. slot) do
    local token, proof = line:match("^(%S+) (%S+)$")
    requests[#requests + 1] = { ["Authorization"] = "DPoP " .. token, ["DPoP"] = proof }
  end
  index = 0
end

function request()
  index = index + 1
  -- Running out shows up as non-2xx answers, which the runner reports.
  local headers = requests[index]
    or { ["Authorization"] = "DPoP exhausted", ["DPoP"] = "exhausted" }
  return wrk.format(nil, nil, headers)
end
