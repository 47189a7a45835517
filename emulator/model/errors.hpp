#pragma once
// The model core's error: bad input from the caller (shapes, token ids, lengths, configuration
// values), a user error naming its field. Every message names the field, the value and the
// limit, because these texts travel unchanged to the user of the wire API.
#include <string>

#include "../errors.hpp"  // the project-wide error type, not this file

namespace kiln::model {

class InputError : public UserError {
 public:
  InputError(std::string field, std::string message) : UserError(std::move(message), std::move(field)) {}
};

}  // namespace kiln::model
