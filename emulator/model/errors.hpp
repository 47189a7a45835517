#pragma once
// Errors raised by the model core. Every message names the field, the value and the limit,
// because these texts travel unchanged to the user of the wire API.
#include <stdexcept>
#include <string>

namespace kiln::model {

// Bad input from the caller (shapes, token ids, lengths, configuration values).
class InputError : public std::invalid_argument {
 public:
  InputError(std::string field, const std::string& message)
      : std::invalid_argument(field + ": " + message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

}  // namespace kiln::model
