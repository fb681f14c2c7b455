-- wrk script: every request carries its own token, sent once.
-- Usage: wrk -t N ... -s bench/wrk_tokens.lua URL -- PREFIX METHOD
-- Thread k reads PREFIX.k (one token per line); the runner writes one file per
-- thread with more tokens than the thread can send in the run.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("slot", counter)
end

function init(args)
  wrk.method = args[2] or "GET"
  tokens = {}
  for line in io.lines(args[1] .. "." .. slot) do
    tokens[#tokens + 1] = line
  end
  index = 0
end

function request()
  index = index + 1
  -- Running out shows up as non-2xx answers, which the runner reports.
  local token = tokens[index] or "exhausted"
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. token })
end
