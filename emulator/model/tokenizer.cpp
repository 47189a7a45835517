#include "model/tokenizer.hpp"

#include <array>
#include <stdexcept>

namespace kiln::model {

namespace {

// GPT-2's bytes_to_unicode order: the printable bytes ! … ~, ¡ … ¬, ® … ÿ first, then the
// others from 0 up. A byte-level BPE vocabulary gives byte k-th in this order the id k.
const std::array<int64_t, 256>& gpt2_byte_ids() {
  static const std::array<int64_t, 256> ids = [] {
    std::array<int64_t, 256> out{};
    std::array<bool, 256> printable{};
    std::vector<int> order;
    for (int b = '!'; b <= '~'; ++b) order.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) order.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) order.push_back(b);
    for (int b : order) printable[b] = true;
    for (int b = 0; b < 256; ++b)
      if (!printable[b]) order.push_back(b);
    for (size_t k = 0; k < order.size(); ++k) out[order[k]] = static_cast<int64_t>(k);
    return out;
  }();
  return ids;
}

const std::string kReplacement = "\xEF\xBF\xBD";

}  // namespace

std::string utf8_text(const std::string& bytes, bool hold_incomplete) {
  std::string out;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = b[i];
    // Strict UTF-8 (RFC 3629): no overlong forms (lead 0xC0 or 0xC1, 0xE0 then 0x80-0x9F, 0xF0
    // then 0x80-0x8F), no surrogates (0xED then 0xA0-0xBF), nothing above U+10FFFF (0xF4 then
    // 0x90 and up, leads 0xF5-0xFF).
    const size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    const unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t k = 1;
    while (k < len && i + k < n && b[i + k] >= (k == 1 ? lo : 0x80) && b[i + k] <= (k == 1 ? hi : 0xBF)) ++k;
    if (k == len) {
      out.append(bytes, i, len);
      i += len;
    } else if (i + k == n && hold_incomplete) {
      break;  // may complete with the next token
    } else {
      out += kReplacement;
      i += k;
    }
  }
  return out;
}

StandInTokenizer StandInTokenizer::opaque(const std::string& family) {
  StandInTokenizer t;
  t.family_ = family;
  t.opaque_ = true;
  return t;
}

std::vector<std::string> StandInTokenizer::families() { return {"qwen3", "qwen3_5", "llama3", "llama3_chat"}; }

std::optional<StandInTokenizer> StandInTokenizer::for_family(const std::string& family) {
  StandInTokenizer t;
  t.family_ = family;
  const auto special = [&t](const std::string& text, int64_t id) {
    t.specials_[text] = id;
    t.special_text_[id] = text;
  };
  if (family.empty()) return t;  // Kiln's own models: id = byte
  if (family == "qwen3" || family == "qwen3_5") {
    const int64_t first = family == "qwen3" ? 151643 : 248044;  // <|endoftext|>, then the ChatML markers
    t.gpt2_byte_order_ = true;
    t.template_ = Template::chatml;
    special("<|endoftext|>", first);
    special("<|im_start|>", first + 1);
    special("<|im_end|>", first + 2);
    t.end_of_turn_ = {first + 2, first};
    return t;
  }
  if (family == "llama3" || family == "llama3_chat") {
    t.gpt2_byte_order_ = true;
    t.template_ = Template::llama3;
    special("<|begin_of_text|>", 128000);
    special("<|end_of_text|>", 128001);
    special("<|start_header_id|>", 128006);
    special("<|end_header_id|>", 128007);
    special("<|eot_id|>", 128009);
    t.bos_ = 128000;
    t.end_of_turn_ = {128009, 128001};
    return t;
  }
  return std::nullopt;
}

std::vector<int64_t> StandInTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(gpt2_byte_order_ ? gpt2_byte_ids()[c] : c);
  return ids;
}

std::vector<uint8_t> StandInTokenizer::bytes_of(int64_t id) const {
  if (opaque_ || id < 0 || id >= 256) return {};
  if (!gpt2_byte_order_) return {static_cast<uint8_t>(id)};
  static const std::array<uint8_t, 256> byte_of = [] {
    std::array<uint8_t, 256> out{};
    for (int b = 0; b < 256; ++b) out[gpt2_byte_ids()[b]] = static_cast<uint8_t>(b);
    return out;
  }();
  return {byte_of[id]};
}

std::string StandInTokenizer::decode(const std::vector<int64_t>& ids, bool hold_incomplete) const {
  std::string text, pending;  // pending: bytes of a run of byte tokens, read as UTF-8 together
  const auto flush = [&](bool last) {
    text += utf8_text(pending, last && hold_incomplete);
    pending.clear();
  };
  for (int64_t id : ids) {
    if (const auto b = bytes_of(id); !b.empty()) {
      pending.push_back(static_cast<char>(b[0]));
      continue;
    }
    flush(false);
    const auto s = special_text_.find(id);
    text += s != special_text_.end() ? s->second : kReplacement;
  }
  flush(true);
  return text;
}

std::vector<int64_t> StandInTokenizer::chat_prompt(const std::vector<ChatMessage>& messages) const {
  if (template_ == Template::none)
    throw std::invalid_argument("model has no chat template (Kiln's own models); use /completions with a prompt");
  std::vector<int64_t> ids;
  const auto add = [&](const std::vector<int64_t>& more) { ids.insert(ids.end(), more.begin(), more.end()); };
  const auto tok = [&](const char* s) { return specials_.at(s); };
  if (template_ == Template::chatml) {
    // <|im_start|>role\ncontent<|im_end|>\n … <|im_start|>assistant\n
    for (const auto& m : messages) {
      ids.push_back(tok("<|im_start|>"));
      add(encode(m.role + "\n" + m.content));
      ids.push_back(tok("<|im_end|>"));
      add(encode("\n"));
    }
    ids.push_back(tok("<|im_start|>"));
    add(encode("assistant\n"));
  } else {
    // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> … assistant header
    ids.push_back(bos_);
    for (const auto& m : messages) {
      ids.push_back(tok("<|start_header_id|>"));
      add(encode(m.role));
      ids.push_back(tok("<|end_header_id|>"));
      add(encode("\n\n" + m.content));
      ids.push_back(tok("<|eot_id|>"));
    }
    ids.push_back(tok("<|start_header_id|>"));
    add(encode("assistant"));
    ids.push_back(tok("<|end_header_id|>"));
    add(encode("\n\n"));
  }
  return ids;
}

}  // namespace kiln::model
