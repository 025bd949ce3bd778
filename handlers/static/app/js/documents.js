// Every GraphQL document the app sends, in one place (the API: schema/schema.graphql).
// Mutations select __typename and each union member they can answer, so the app can show
// the user what happened (messages.js). A document named *_BASIC is the fallback for an API
// that does not have a newer field yet (Api.query's `fallback`).

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

const GIFT_LINE = `fragment GiftLine on GiftTransfer {
  id quantity coins createdAt gift { id name } sender { id displayName }
}`;
const RANKING_FIELDS = `status endedAt coinsReceived topGifters(first: 10) { rank coins user { id displayName } }`;

export const STREAM = `query Stream($id: ID!) {
  liveStream(id: $id) {
    id title status startedAt endedAt coinsReceived
    creator { id displayName }
    topGifters(first: 10) { rank coins user { id displayName } }
    gifts(first: 20) { edges { node { ...GiftLine } } }
  }
}
${GIFT_LINE}`;

// The ranking with the caller's own place (myRank: null when signed out), read again after
// gifts arrive; RANKING_BASIC for an API without myRank.
export const RANKING = `query Ranking($id: ID!) { liveStream(id: $id) { ${RANKING_FIELDS} myRank { coins rank } } }`;
export const RANKING_BASIC = `query RankingBasic($id: ID!) { liveStream(id: $id) { ${RANKING_FIELDS} } }`;

// What a page reads to catch up after its feed connects or reconnects: the totals and the
// gifts newer than the last one it has, a page at a time (see feed.js).
export const CATCH_UP = `query CatchUp($id: ID!, $after: String) {
  liveStream(id: $id) {
    ${RANKING_FIELDS}
    gifts(first: 20, after: $after) { edges { cursor node { ...GiftLine } } pageInfo { hasNextPage } }
  }
}
${GIFT_LINE}`;

export const GIFT_FEED = `subscription GiftFeed($streamId: ID!) {
  giftFeed(streamId: $streamId) { ...GiftLine }
}
${GIFT_LINE}`;

const USER_ERROR = `... on UserError { message }`;

export const SEND_GIFT = `mutation SendGift($input: SendGiftInput!) {
  sendGift(input: $input) {
    __typename
    ... on GiftSent { transfer { ...GiftLine } wallet { coins } }
    ... on InsufficientCoins { required available }
    ${USER_ERROR}
  }
}
${GIFT_LINE}`;

export const PURCHASE_COINS = `mutation PurchaseCoins($input: PurchaseCoinsInput!) {
  purchaseCoins(input: $input) {
    __typename
    ... on CoinsPurchased { purchase { id coins price { formatted } } wallet { coins } }
    ${USER_ERROR}
  }
}`;

// History rows name the gift and the other party through Transaction.transfer (one batched
// read per page); WALLET_BASIC is for an API without it (rows show the reference id).
const WALLET_FIELDS = `id displayName isAdult restricted wallet { coins diamonds }`;
const ENTRY = `id kind coins diamonds referenceId createdAt`;
const PAGE = `pageInfo { hasNextPage endCursor }`;
export const WALLET = `query Wallet($first: Int!, $after: String) { me { ${WALLET_FIELDS}
  transactions(first: $first, after: $after) {
    edges { node { ${ENTRY} transfer { quantity gift { id name } sender { displayName } recipient { displayName } } } }
    ${PAGE}
  } } }`;
export const WALLET_BASIC = `query WalletBasic($first: Int!, $after: String) { me { ${WALLET_FIELDS}
  transactions(first: $first, after: $after) { edges { node { ${ENTRY} } } ${PAGE} } } }`;

export const CREATOR = `query Creator {
  me {
    id displayName isAdult restricted wallet { diamonds }
    earnings {
      diamonds availableDiamonds pendingDiamonds nextAvailableAt cashValue { formatted }
      minimumWithdrawal { amount formatted } remainingToday { formatted }
    }
    payoutAccount { status requirementsDue }
    withdrawals(first: 20) { edges { node { id diamonds amount { formatted } status createdAt settledAt returnedDiamonds } } }
  }
}`;

// The creator's payout account at the processor: the hosted onboarding to send them to.
export const START_PAYOUT_ONBOARDING = `mutation StartPayoutOnboarding($input: StartPayoutOnboardingInput!) {
  startPayoutOnboarding(input: $input) {
    __typename
    ... on PayoutOnboardingStarted { url payoutAccount { status requirementsDue } }
    ${USER_ERROR}
  }
}`;

// The API has no "my live stream" field: the creator's own stream is found among the live
// ones (at most one per account).
export const MY_STREAM = `query MyStream {
  liveStreams(first: 100) { edges { node { id title startedAt creator { id } } } }
}`;

// The end-of-stream summary.
export const STREAM_SUMMARY = `query StreamSummary($id: ID!) {
  liveStream(id: $id) { id title startedAt endedAt coinsReceived topGifters(first: 3) { rank coins user { displayName } } }
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
    ... on PayoutAccountRequired { status }
    ${USER_ERROR}
  }
}`;

// Who is being paid and the review signals the API returns to admins.
export const PENDING_WITHDRAWALS = `query PendingWithdrawals($first: Int!, $after: String) {
  pendingWithdrawals(first: $first, after: $after) {
    edges { node {
      id diamonds amount { formatted } status createdAt
      account { id displayName } accountRestricted payoutAccountStatus
      review { accountCreatedAt earnedDiamonds newAccountsPercent restrictedAccountsPercent }
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const SETTLE_WITHDRAWAL = `mutation SettleWithdrawal($input: SettleWithdrawalInput!) {
  settleWithdrawal(input: $input) {
    __typename ... on WithdrawalSettled { withdrawal { id status amount { formatted } account { displayName } } } ${USER_ERROR}
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
