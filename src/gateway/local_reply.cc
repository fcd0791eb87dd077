#include "gateway/local_reply.h"

#include "http/writer.h"
#include "observability/access_log.h"

namespace sluice::gateway {

size_t append_local_reply(std::string& out, const LocalReply& r, std::string& scratch) {
  std::string_view body = r.body;
  if (!r.raw) {
    scratch.clear();
    scratch.append("{\"error\":");
    observability::append_json_string(scratch, r.message);
    if (!r.code.empty()) {
      scratch.append(",\"code\":");
      observability::append_json_string(scratch, r.code);
    }
    scratch.append(r.extra_json);
    scratch.append(",\"status\":");
    char digits[4] = {static_cast<char>('0' + r.status / 100 % 10),
                      static_cast<char>('0' + r.status / 10 % 10),
                      static_cast<char>('0' + r.status % 10), 0};
    scratch.append(digits, 3);
    scratch.append(",\"request_id\":");
    observability::append_json_string(scratch, r.request_id);
    scratch.append("}\n");
    body = scratch;
  }
  http::append_status_line(out, r.status);
  http::append_header(out, "Content-Type", r.raw ? r.content_type : "application/json");
  http::append_header(out, "Content-Length", static_cast<uint64_t>(body.size()));
  http::append_header(out, "x-request-id", r.request_id);
  if (!r.extra_headers.empty()) {
    out.append(r.extra_headers);
  } else if (r.status == 503 && !r.raw) {
    out.append("Retry-After: 1\r\n");
  }
  if (r.close) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (r.head_request) return 0;
  out.append(body);
  return body.size();
}

}  // namespace sluice::gateway
