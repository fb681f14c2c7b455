-- wrk script: every request carries its own token, sent once.
-- Usage: wrk -t N ... -s bench/wrk_tokens.lua URL -- PREFIX METHOD [form]
-- Thread k reads PREFIX.k (one token per line); the runner writes one file per
-- thread with more tokens than the thread can send in the run. With "form" the
-- token goes in an RFC 6749 refresh grant's form body (POST /token), else in the
-- Authorization header.
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("slot", counter)
end

function init(args)
  wrk.method = args[2] or "GET"
  form = args[3] == "form"
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
  if form then
    return wrk.format(nil, nil,
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=refresh_token&refresh_token=" .. token)
  end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. token })
end
