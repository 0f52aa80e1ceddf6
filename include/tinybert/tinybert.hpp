// tinybert: everything a user of the CPU library includes.
#pragma once

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/backend/select.hpp"
#include "tinybert/batch.hpp"
#include "tinybert/config.hpp"
#include "tinybert/describe.hpp"
#include "tinybert/encoder.hpp"
#include "tinybert/error.hpp"
#include "tinybert/format.hpp"
#include "tinybert/heads.hpp"
#include "tinybert/model.hpp"
#include "tinybert/tasks/classify.hpp"
#include "tinybert/tasks/embed.hpp"
#include "tinybert/tasks/extract.hpp"
#include "tinybert/tasks/fill_mask.hpp"
#include "tinybert/tensor.hpp"
#include "tinybert/tokenizer.hpp"
