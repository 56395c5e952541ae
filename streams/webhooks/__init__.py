"""The webhooks stage: each tenant's endpoints sent its job and message events, signed
as Standard Webhooks says, at least once.

    subscriptions  the endpoints: records on bulk.webhooks, the Redis view, the registry
    targets        where a webhook may go (http(s), public addresses only)
    signing        the webhook-signature header
    events         an event record -> the webhook message and its webhook-id
    endpoints      one endpoint's bounded queue, workers and HTTP client
    backoff        when a failed message is tried again
    retries        the retry topic (one partition per delay tier) and the DLQ
    offsets        which offsets may be committed
    dispatcher     the loop that runs it all
"""
