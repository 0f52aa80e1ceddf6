-- wrk script: POST /v1/extract, one real CLUENER2020 sentence per request (rotating through
-- TEXTS_FILE) with a three-name entity schema (one UIE forward pass of three prompt+text sequences).
--   wrk -t2 -c64 -d30s -s bench/load/extract.lua http://127.0.0.1:PORT -- texts.txt
ENDPOINT = "/v1/extract"
local schema = '["人物", "地点", "组织机构"]'
function make_body(text)
  return '{"input": ' .. json_string(text) .. ', "schema": ' .. schema .. '}'
end
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")
