// Helpers for tests of refusals: the message a call throws, and a substring test on it.
#pragma once

#include <exception>
#include <string>

namespace dsr1::test {

// The exception message of `f()`, or "" if it did not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace dsr1::test
