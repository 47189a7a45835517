#pragma once
// The model core's error: bad input from the caller (shapes, token ids, lengths, configuration
// values), a user error naming its field. Every message names the field, the value and the
// limit, because these texts travel unchanged to the user of the wire API.
#include <cstdint>
#include <string>
#include <vector>

#include "../errors.hpp"  // the project-wide error type, not this file

namespace kiln::model {

class InputError : public UserError {
 public:
  InputError(std::string field, std::string message) : UserError(std::move(message), std::move(field)) {}
};

// A shape as error messages print it: "[3, 2]".
inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace kiln::model
