// The web page's files, embedded into the binary at build time (embed_web_assets.cmake turns
// every file of apps/server/web/ into a byte array), so the page works offline and ships with
// the one executable.
#pragma once

#include <string_view>
#include <vector>

namespace tinybert::server {

struct WebAsset {
  std::string_view path;  // relative to web/, e.g. "index.html", "app.js"
  std::string_view content_type;
  std::string_view data;
};

const std::vector<WebAsset>& web_assets();

}  // namespace tinybert::server
