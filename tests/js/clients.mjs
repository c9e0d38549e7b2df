// The official AWS and Google JavaScript clients against this server, as docs/compat.md
// points them at it. Reads its settings as JSON from argv[2]; prints one JSON object of what
// each call answered (or the error the client raised), for tests/test_js_clients.py to check.
import { readFileSync } from "node:fs";

import {
  CompareFacesCommand,
  CreateCollectionCommand,
  DetectFacesCommand,
  DetectLabelsCommand,
  IndexFacesCommand,
  ListCollectionsCommand,
  ListFacesCommand,
  RekognitionClient,
  SearchFacesByImageCommand,
} from "@aws-sdk/client-rekognition";
import vision from "@google-cloud/vision";
import grpc from "@grpc/grpc-js";

const settings = JSON.parse(process.argv[2]);
const image = (name) => readFileSync(settings.images[name]);

// What a client raised, in the terms its users see: the error's name (AWS) or gRPC code
// (Google), and the HTTP status where the client keeps one.
function failure(error) {
  return {
    error: error.name,
    code: error.code ?? null,
    status: error.$metadata?.httpStatusCode ?? null,
  };
}

async function attempt(call) {
  try {
    return await call();
  } catch (error) {
    return failure(error);
  }
}

function rekognition(secret) {
  return new RekognitionClient({
    endpoint: settings.url,
    region: "eu-west-1",
    credentials: { accessKeyId: settings.aws.accessKeyId, secretAccessKey: secret },
    maxAttempts: 1,
  });
}

async function aws() {
  const client = rekognition(settings.aws.secretAccessKey);
  const astronaut = image("astronaut");
  const answers = {};
  answers.detectFaces = await client.send(new DetectFacesCommand({ Image: { Bytes: astronaut } }));
  answers.detectLabels = await client.send(
    new DetectLabelsCommand({ Image: { Bytes: image("coffee") }, MaxLabels: 10, MinConfidence: 50 }),
  );
  answers.createCollection = await client.send(new CreateCollectionCommand({ CollectionId: "js" }));
  answers.createAgain = await attempt(() =>
    client.send(new CreateCollectionCommand({ CollectionId: "js" })),
  );
  answers.indexFaces = await client.send(
    new IndexFacesCommand({
      CollectionId: "js",
      Image: { Bytes: astronaut },
      ExternalImageId: "astronaut.jpg",
    }),
  );
  answers.searchFacesByImage = await client.send(
    new SearchFacesByImageCommand({ CollectionId: "js", Image: { Bytes: astronaut } }),
  );
  answers.listFaces = await client.send(new ListFacesCommand({ CollectionId: "js" }));
  answers.compareFaces = await client.send(
    new CompareFacesCommand({ SourceImage: { Bytes: astronaut }, TargetImage: { Bytes: astronaut } }),
  );
  answers.notAnImage = await attempt(() =>
    client.send(new DetectFacesCommand({ Image: { Bytes: image("notImage") } })),
  );
  answers.wrongSecret = await attempt(() =>
    rekognition("x".repeat(40)).send(new ListCollectionsCommand({})),
  );
  return answers;
}

async function google() {
  const rest = (apiKey) =>
    new vision.ImageAnnotatorClient({
      fallback: "rest",
      apiEndpoint: "127.0.0.1",
      port: settings.port,
      protocol: "http",
      apiKey,
    });
  const client = rest(settings.googleKey);
  const astronaut = { content: image("astronaut") };
  const answers = {};
  [answers.faceDetection] = await client.faceDetection({ image: astronaut });
  [answers.labelDetection] = await client.labelDetection({ image: { content: image("coffee") } });
  answers.wrongKey = await attempt(() => rest("not-a-key").faceDetection({ image: astronaut }));
  const plaintext = new vision.ImageAnnotatorClient({
    apiEndpoint: "127.0.0.1",
    port: settings.grpcPort,
    sslCreds: grpc.credentials.createInsecure(),
  });
  [answers.grpcBatch] = await plaintext.batchAnnotateImages(
    { requests: [{ image: astronaut, features: [{ type: "FACE_DETECTION" }] }] },
    { otherArgs: { headers: { "x-goog-api-key": settings.googleKey } } },
  );
  await plaintext.close();
  return answers;
}

const answers = { rekognition: await aws(), vision: await google() };
// Buffers (none expected) and BigInts would not survive JSON: said plainly if they appear.
process.stdout.write(JSON.stringify(answers, (_, value) => (typeof value === "bigint" ? `${value}` : value)));
