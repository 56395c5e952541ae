"""The fan-out stage: pages of users in, one send event per user out, exactly once
(a confluent-kafka transactional consume -> produce loop; `loop.FanoutLoop`)."""
