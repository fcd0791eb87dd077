#include "router/path_trie.h"

namespace sluice::router {

void PathTrie::add(std::string_view node_path, Kind kind, uint32_t route) {
  if (build_.empty()) build_.emplace_back();
  uint32_t node = 0;
  if (!node_path.empty()) {
    size_t pos = 1;  // past the leading '/'
    for (;;) {
      const size_t end = node_path.find('/', pos);
      const std::string_view seg =
          node_path.substr(pos, end == std::string_view::npos ? node_path.npos : end - pos);
      auto it = build_[node].children.find(seg);
      if (it == build_[node].children.end()) {
        const uint32_t child = static_cast<uint32_t>(build_.size());
        build_[node].children.emplace(std::string(seg), child);
        build_.emplace_back();  // invalidates references into build_: none are held here
        node = child;
      } else {
        node = it->second;
      }
      if (end == std::string_view::npos) break;
      pos = end + 1;
    }
  }
  BuildNode& n = build_[node];
  switch (kind) {
    case Kind::kExact:
      n.exact.push_back(route);
      break;
    case Kind::kPrefix:
      n.prefix.push_back(route);
      break;
    case Kind::kDeeper:
      n.deeper.push_back(route);
      break;
  }
}

PathTrie::Span PathTrie::flatten(const std::vector<uint32_t>& list) {
  Span s{static_cast<uint32_t>(routes_.size()), static_cast<uint32_t>(list.size())};
  routes_.insert(routes_.end(), list.begin(), list.end());
  return s;
}

void PathTrie::finish() {
  nodes_.clear();
  routes_.clear();
  nodes_.resize(build_.size());
  for (size_t i = 0; i < build_.size(); ++i) {
    const BuildNode& b = build_[i];
    Node& n = nodes_[i];
    n.exact = flatten(b.exact);
    n.prefix = flatten(b.prefix);
    n.deeper = flatten(b.deeper);
    std::vector<std::pair<std::string, uint32_t>> children(b.children.begin(), b.children.end());
    n.children.build(children);
  }
  build_.clear();
  build_.shrink_to_fit();
}

}  // namespace sluice::router
