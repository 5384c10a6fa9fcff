;; notags.wat: yomo_observe_datatags registers nothing.
(module
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags"))
  (func (export "yomo_handler")))
