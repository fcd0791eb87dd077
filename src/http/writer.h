// Serialising HTTP/1.1 message heads and chunk framing into a byte buffer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::http {

std::string_view reason_phrase(int status);

void append_status_line(std::string& out, int status, std::string_view reason = {});
void append_header(std::string& out, std::string_view name, std::string_view value);
void append_header(std::string& out, std::string_view name, uint64_t value);
// "<hex size>\r\n"; the caller appends the data and then "\r\n".
void append_chunk_header(std::string& out, size_t size);
inline void append_last_chunk(std::string& out) {
  out.append("0\r\n\r\n");
}

// Hop-by-hop fields (RFC 9110 section 7.6.1) that a proxy must not forward.
bool is_hop_by_hop(std::string_view name);
// True when `name` is listed in a Connection header value ("keep-alive, x-foo").
bool listed_in_connection(std::string_view connection_value, std::string_view name);

}  // namespace sluice::http
