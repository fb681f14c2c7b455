-- wrk script: POST the JSON body given as the first script argument.
-- Usage: wrk ... -s bench/wrk_post.lua URL -- '{"username": "...", "password": "..."}'
function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/json"
end
