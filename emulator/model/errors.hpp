#pragma once
// Errors raised by the model core. Every message names the field, the value and the limit,
// because these texts travel unchanged to the user of the wire API.
#include <stdexcept>
#include <string>

namespace kiln::model {

// Bad input from the caller (shapes, token ids, lengths, configuration values).
class InputError : public std::invalid_argument {
 public:
  InputError(std::string field, std::string message)
      : std::invalid_argument(field + ": " + message), field_(std::move(field)), message_(std::move(message)) {}
  const std::string& field() const { return field_; }
  const std::string& message() const { return message_; }  // without the field

 private:
  std::string field_, message_;
};

}  // namespace kiln::model
