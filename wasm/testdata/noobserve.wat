;; noobserve.wat: no yomo_observe_datatags export.
(module
  (memory (export "memory") 1)
  (func (export "yomo_handler")))
