// Routes indexed by path segments: a request walks one node per segment of its path and collects
// the route lists that node holds, each already in config order. Cost follows the depth of the
// path, not the number of routes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "router/string_table.h"

namespace sluice::router {

class PathTrie {
 public:
  struct List {
    const uint32_t* begin;
    const uint32_t* end;
  };

  // How a route's path relates to its node (the node of "/a/b" is reached by segments a, b).
  enum class Kind {
    kExact,   // path == "/a/b"
    kPrefix,  // path == "/a/b" or starts with "/a/b/"  (prefix "/a/b")
    kDeeper,  // path starts with "/a/b/"               (prefix "/a/b/"; "/" is the root's)
  };

  // Build phase. `node_path` starts with '/' and has no trailing '/' ("" = the root, for kDeeper
  // only). Routes must be added in increasing index order.
  void add(std::string_view node_path, Kind kind, uint32_t route);
  // Ends the build phase; lookups are valid from here on.
  void finish();

  // Calls f(List) for each non-empty list of routes whose path condition holds for `path` (an
  // absolute path, starting with '/'). Lists may overlap; each is in increasing order.
  template <class F>
  void collect(std::string_view path, F&& f) const {
    if (nodes_.empty()) return;
    const Node* node = &nodes_[0];
    emit(node->deeper, f);  // any absolute path has at least one segment, if empty ("/")
    size_t pos = 1;
    for (;;) {
      const size_t end = path.find('/', pos);
      const bool last = end == std::string_view::npos;
      const uint32_t child = node->children.find(path.substr(pos, last ? path.npos : end - pos));
      if (child == StringTable<false>::kNotFound) return;
      node = &nodes_[child];
      emit(node->prefix, f);
      if (last) {
        emit(node->exact, f);
        return;
      }
      emit(node->deeper, f);
      pos = end + 1;
    }
  }

  bool empty() const { return nodes_.empty(); }

 private:
  struct Span {
    uint32_t begin = 0;
    uint32_t size = 0;
  };
  struct Node {
    StringTable<false> children;  // segment -> node index
    Span exact, prefix, deeper;
  };
  struct BuildNode {
    std::map<std::string, uint32_t, std::less<>> children;
    std::vector<uint32_t> exact, prefix, deeper;
  };

  template <class F>
  void emit(Span s, F& f) const {
    if (s.size != 0) f(List{routes_.data() + s.begin, routes_.data() + s.begin + s.size});
  }

  Span flatten(const std::vector<uint32_t>& list);

  std::vector<BuildNode> build_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> routes_;
};

}  // namespace sluice::router
