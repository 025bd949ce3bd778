// Every GraphQL document the app sends, in one place (the API: schema/schema.graphql).
// Mutations select __typename and each union member they can answer, so the app can show
// the user what happened (messages.js).

export const ME = `query Me { me { id displayName isAdult wallet { coins diamonds } } }`;

export const CATALOG = `query Catalog {
  coinPackages { id coins price { formatted } }
  gifts { id name coins diamonds }
}`;

export const LIVE_STREAMS = `query LiveStreams($first: Int!, $after: String) {
  liveStreams(first: $first, after: $after) {
    edges { node { id title startedAt coinsReceived creator { id displayName } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const STREAM = `query Stream($id: ID!) {
  liveStream(id: $id) {
    id title status startedAt endedAt coinsReceived
    creator { id displayName }
    topGifters(first: 10) { rank coins user { id displayName } }
    gifts(first: 20) { edges { node { ...GiftLine } } }
  }
}
fragment GiftLine on GiftTransfer { id quantity coins createdAt gift { name } sender { id displayName } }`;

export const RANKING = `query Ranking($id: ID!) {
  liveStream(id: $id) { status coinsReceived topGifters(first: 10) { rank coins user { id displayName } } }
}`;

export const GIFT_FEED = `subscription GiftFeed($streamId: ID!) {
  giftFeed(streamId: $streamId) { id quantity coins createdAt gift { name } sender { id displayName } }
}`;

const USER_ERROR = `... on UserError { message }`;

export const SEND_GIFT = `mutation SendGift($input: SendGiftInput!) {
  sendGift(input: $input) {
    __typename
    ... on GiftSent { transfer { id quantity coins gift { name } } wallet { coins } }
    ... on InsufficientCoins { required available }
    ${USER_ERROR}
  }
}`;

export const PURCHASE_COINS = `mutation PurchaseCoins($input: PurchaseCoinsInput!) {
  purchaseCoins(input: $input) {
    __typename
    ... on CoinsPurchased { purchase { id coins price { formatted } } wallet { coins } }
    ${USER_ERROR}
  }
}`;

// `restricted` comes with the Real money work (chargebacks); WALLET_BASIC is for an API
// that does not have it yet.
const WALLET_FIELDS = `id displayName isAdult wallet { coins diamonds }
    transactions(first: $first, after: $after) {
      edges { node { id kind coins diamonds referenceId createdAt } }
      pageInfo { hasNextPage endCursor }
    }`;
export const WALLET = `query Wallet($first: Int!, $after: String) { me { ${WALLET_FIELDS} restricted } }`;
export const WALLET_BASIC = `query WalletBasic($first: Int!, $after: String) { me { ${WALLET_FIELDS} } }`;

const EARNINGS_FIELDS = `diamonds cashValue { formatted } minimumWithdrawal { amount formatted }
      remainingToday { formatted }`;
const CREATOR_FIELDS = `id displayName isAdult wallet { diamonds }
    withdrawals(first: 20) { edges { node { id diamonds amount { formatted } status createdAt settledAt } } }`;
// The earnings hold (availableDiamonds, pendingDiamonds, nextAvailableAt) comes with the
// Real money work; CREATOR_BASIC is for an API without it, where every diamond is available.
export const CREATOR = `query Creator {
  me { ${CREATOR_FIELDS}
    earnings { ${EARNINGS_FIELDS} availableDiamonds pendingDiamonds nextAvailableAt }
    restricted }
}`;
export const CREATOR_BASIC = `query CreatorBasic { me { ${CREATOR_FIELDS} earnings { ${EARNINGS_FIELDS} } } }`;

// The API has no "my live stream" field: the creator's own stream is found among the live
// ones (at most one per account).
export const MY_STREAM = `query MyStream {
  liveStreams(first: 100) { edges { node { id title startedAt coinsReceived creator { id } } } }
}`;

export const START_STREAM = `mutation StartLiveStream($input: StartLiveStreamInput!) {
  startLiveStream(input: $input) { __typename ... on LiveStreamStarted { stream { id title } } ${USER_ERROR} }
}`;

export const END_STREAM = `mutation EndLiveStream($input: EndLiveStreamInput!) {
  endLiveStream(input: $input) { __typename ... on LiveStreamEnded { stream { id status } } ${USER_ERROR} }
}`;

export const REQUEST_WITHDRAWAL = `mutation RequestWithdrawal($input: RequestWithdrawalInput!) {
  requestWithdrawal(input: $input) {
    __typename
    ... on WithdrawalRequested { withdrawal { id status amount { formatted } } wallet { diamonds } }
    ... on InsufficientDiamonds { required available }
    ... on BelowMinimum { minimum { formatted } }
    ... on DailyLimitExceeded { remaining { formatted } }
    ${USER_ERROR}
  }
}`;

export const PENDING_WITHDRAWALS = `query PendingWithdrawals($first: Int!, $after: String) {
  pendingWithdrawals(first: $first, after: $after) {
    edges { node { id diamonds amount { formatted } status createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const SETTLE_WITHDRAWAL = `mutation SettleWithdrawal($input: SettleWithdrawalInput!) {
  settleWithdrawal(input: $input) {
    __typename ... on WithdrawalSettled { withdrawal { id status amount { formatted } } } ${USER_ERROR}
  }
}`;

export const REFUND_PURCHASE = `mutation RefundPurchase($input: RefundPurchaseInput!) {
  refundPurchase(input: $input) {
    __typename
    ... on PurchaseRefunded { purchase { id status coins price { formatted } } }
    ... on InsufficientCoins { required available }
    ${USER_ERROR}
  }
}`;
