#pragma once
// Built-in stand-in tokenizers for the text surfaces (protocol.md §W13.9): no vocabulary files,
// no downloads. Text is tokenized byte by byte: each UTF-8 byte becomes that family's own
// single-byte token (byte-level BPE vocabularies give the 256 bytes the first 256 ids, in GPT-2's
// bytes_to_unicode order), so the ids are valid for the real tokenizer too, though the real one
// would merge bytes into fewer tokens. Special tokens sit at their real ids, and the chat
// template is the family's own (Qwen's ChatML, Llama 3's header tokens).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kiln::model {

struct ChatMessage {
  std::string role, content;
};

class StandInTokenizer {
 public:
  // The tokenizer of a registry family: qwen3, qwen3_5, llama3, llama3_chat; "" (Kiln's own
  // models: id = byte, no chat template). nullopt for a family without one.
  static std::optional<StandInTokenizer> for_family(const std::string& family);
  static std::vector<std::string> families();  // the families above, for error messages
  // For a family without a stand-in: it encodes nothing (text surfaces refuse it) and decodes
  // every id to U+FFFD, so token-id surfaces still answer valid text.
  static StandInTokenizer opaque(const std::string& family);
  bool can_encode() const { return !opaque_; }

  std::vector<int64_t> encode(const std::string& text) const;
  // Bytes of byte tokens and the text of special tokens, read as UTF-8 (U+FFFD for a byte that
  // is not part of a valid sequence); every other id is U+FFFD. With `hold_incomplete`, an
  // incomplete sequence at the end is left out (a stream's next token may complete it).
  std::string decode(const std::vector<int64_t>& ids, bool hold_incomplete = false) const;
  std::vector<uint8_t> bytes_of(int64_t id) const;  // a byte token's byte; empty otherwise
  // The conversation as the family's template renders it, ending with the assistant's turn
  // opened. InvalidRequest-style std::invalid_argument when the family has no template.
  std::vector<int64_t> chat_prompt(const std::vector<ChatMessage>& messages) const;
  // Tokens that end an assistant turn (the template's end-of-turn and end-of-text).
  const std::vector<int64_t>& end_of_turn() const { return end_of_turn_; }
  bool has_chat_template() const { return template_ != Template::none; }
  const std::string& family() const { return family_; }

 private:
  enum class Template { none, chatml, llama3 };
  std::string family_;
  Template template_ = Template::none;
  bool gpt2_byte_order_ = false;                 // byte b is id bytes_to_unicode-rank(b); else id b
  bool opaque_ = false;                          // no byte tokens known
  std::map<std::string, int64_t> specials_;       // "<|im_start|>" → id
  std::map<int64_t, std::string> special_text_;
  std::vector<int64_t> end_of_turn_;
  int64_t bos_ = -1;                              // prepended to a chat prompt when >= 0
};

// UTF-8 text of raw bytes (see decode).
std::string utf8_text(const std::string& bytes, bool hold_incomplete);

}  // namespace kiln::model
