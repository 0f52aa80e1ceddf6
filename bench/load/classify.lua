-- wrk script: POST /v1/classify, one real Chinese news title per request (rotating through
-- TEXTS_FILE), zero-shot into the 15 TNEWS categories (the server's default news template).
--   wrk -t2 -c64 -d30s -s bench/load/classify.lua http://127.0.0.1:PORT -- texts.txt
ENDPOINT = "/v1/classify"
local labels = '["故事", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事", ' ..
               '"旅游", "国际", "股票", "农业", "电竞"]'
function make_body(text)
  return '{"input": ' .. json_string(text) .. ', "labels": ' .. labels .. '}'
end
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")
