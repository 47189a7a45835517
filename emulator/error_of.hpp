#pragma once
// Test helper: the message of the E that f() throws, or "<no error>".
#include <string>

namespace kiln::testing {

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace kiln::testing
